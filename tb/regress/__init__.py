"""`make regress`: testplans (testplans/*.hjson), suites, seeds, local or Dask execution,
merged functional coverage and the results in build/regress/ (docs/regress.md)."""
