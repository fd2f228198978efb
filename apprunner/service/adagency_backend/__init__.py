"""Reference backend for the virtual ad agency: the app contract, executable (see apprunner/README.md)."""

__version__ = "0.1.0"
