"""Entry point for `python -m cifar`."""

from cifar.cli import main

if __name__ == "__main__":
    main()
