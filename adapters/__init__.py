"""Backend adapters. Each implements core.ports.Backend; drivers are imported only by their adapter."""
