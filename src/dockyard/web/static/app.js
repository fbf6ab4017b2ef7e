// The little JavaScript the UI needs: copy buttons and confirmation of destructive forms.
// Everything works without it except copying to the clipboard.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API unavailable (plain HTTP on another host): select the text instead.
    const field = document.getElementById(button.getAttribute("aria-controls"));
    if (field) { field.focus(); field.select(); document.execCommand("copy"); }
  }
  const label = button.textContent;
  button.textContent = "Copied";
  button.setAttribute("data-copied", "true");
  setTimeout(() => { button.textContent = label; button.removeAttribute("data-copied"); }, 2000);
});
document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});
