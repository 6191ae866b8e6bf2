"""Coverage-guided fuzzing (atheris/libFuzzer) of the framer, the HL7 parsers and the inbound router.

Run with ``make fuzz`` (see docs/security.md, "Fuzzing"). Each harness is a module with
``main(argv)``; :mod:`fuzz.__main__` runs them one after another, each in its own process and
bounded by time, memory and per-input time, then runs the long hypothesis and schemathesis passes.
"""
