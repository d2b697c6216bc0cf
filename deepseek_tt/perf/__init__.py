"""Performance helpers: hardware figures and the roofline estimator."""
