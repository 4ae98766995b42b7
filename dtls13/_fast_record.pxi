# Record-layer hot paths, included into _fast.pyx.
