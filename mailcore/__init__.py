"""Postern's shared library: settings, logging, metrics, the bus, the directory, the
message parser and the mail storage engine. It knows no protocol syntax and imports no
service."""
