"""The promotion gates: pure checks, the decision against the champion, the gate report."""
