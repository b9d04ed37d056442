"""The report: read collected results, find what mattered, write `reports/` (torch-free)."""
