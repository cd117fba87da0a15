"""convergent: real-time collaborative model training on CRDTs.

See README.md for the quickstart and DESIGN.md (in the project's shared notes) for the map.
"""

__version__ = "0.1.0"
