"""The data path between nodes: length-prefixed frames over TCP (see framing.py for why)."""
