"""Human codings in and out: BORIS, ELAN, Noldus The Observer and CSV, through an ethogram mapping.

The shared form every reader produces and every consumer reads is :mod:`pipeline.codings.contract`.
"""
