# Handshake hot paths, included into _fast.pyx.
