"""hexq core: the domain model, ports, services and runtimes. Standard library only."""
