"""The recipes that ship with simmm, installed as package data (``simmm recipes`` lists them)."""
