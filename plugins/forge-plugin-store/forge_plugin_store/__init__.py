"""forge-plugin-store: the local model store, Hub pulls and ``forge pull/list/show/rm``."""
