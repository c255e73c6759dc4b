"""The server and the command line: pages, REST API, auth, webhooks and the CLI."""
