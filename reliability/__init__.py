"""``make reliability``: Postern's promises under faults, load and hostile input.

Leaf package: it may import mailcore, services and tests.support; nothing imports it.
"""
