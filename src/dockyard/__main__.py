from dockyard.cli import main

if __name__ == "__main__":  # not when `serve --workers` starts a worker, which imports this module again
    main()
