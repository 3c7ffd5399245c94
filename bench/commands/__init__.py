"""One module per `python -m bench` verb, each with `add_arguments(parser)` and `run(args) -> int`."""
