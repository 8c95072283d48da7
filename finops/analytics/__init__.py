"""Questions asked of the warehouse: plain functions over SQL that return Arrow tables."""
