"""pyinfra ``@deploy`` functions, one job each, composed by ``deploy.py``; all read the spec."""
