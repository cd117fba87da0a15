"""Test kit shipped with convergent: the seeded network simulator and Hypothesis strategies.

Users can test their own schemas with the same tools convergent tests itself with
(as Yjs ships ``TestConnector`` in its test helper).
"""
