"""The control plane: command line now; the API, console and metadata store later."""
