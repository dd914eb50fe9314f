"""Decoding CTC outputs: greedy (best path) and WFST search over TLG graphs."""
