"""One module per source format; each reads its format and hands the warehouse a delivery."""
