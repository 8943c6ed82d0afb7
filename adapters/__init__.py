"""Backend adapters. Each implements hexq.core.ports.Backend; drivers are imported only by their adapter."""
