"""pyinfra ``@deploy`` functions, one job each, composed by ``deploy.py``; each reads the node spec."""
