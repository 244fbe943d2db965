"""The xkd command line (installed as `xkd.cli`)."""
