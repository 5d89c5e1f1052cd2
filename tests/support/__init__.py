"""Test support: real servers on loopback and faithful stand-ins where no real server can run here."""
