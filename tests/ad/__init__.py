"""Tests of differentiation (diffc/ad and the derivative rules in diffc/prims).

A package, so that its modules are imported as `ad.test_cli`, `ad.test_properties`: plain
`test_cli` and `test_properties` are already taken by tests/cli and tests/prims (pytest's
default import mode refuses two test modules of one basename), and so that the helpers in
fd.py can be imported relatively."""
