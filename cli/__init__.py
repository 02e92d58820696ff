"""The `agr` command line (main.py: the Typer app). Its commands either start the whole
stack on this machine (local_stack) or talk to a running service's HTTP API (remote.py,
uploads.py, evaluate.py through client.py); admin.py works on the database directly.
May import anything light; no other package imports the CLI.
"""
