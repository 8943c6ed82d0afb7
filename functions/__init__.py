"""Entry points and the composition root: settings, bootstrap, API, worker, poller, CLI."""
