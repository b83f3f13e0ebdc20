"""
The soak run (C{make soak}): many connections mixing good requests, bad
input and random disconnects against a real C{twistd -n jsonservice}
process, checking that every request got exactly one reply.  See L{run}.
"""
