"""Side-by-side benchmarks of Postern against Debian's Postfix and Dovecot (``make bench``).

See ``bench/README.md`` for what each workload measures and how to run one of them.
"""
