"""Case files: the schema, loading and validation, initial data and exact solutions."""

from wgf.cases.case import Case, find_case_file, load_case, shipped_cases
from wgf.cases.schema import SCHEMA, Key, Table

__all__ = ["SCHEMA", "Case", "Key", "Table", "find_case_file", "load_case", "shipped_cases"]
