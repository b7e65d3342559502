"""Package layout that pyproject.toml cannot express on its own.

The SQL files live at the top of the repository (`sql/`), where reviewers and DBAs find them,
and ship inside the wheel as package data of `mlops_assets.sql` (read with importlib.resources).
The tests package is not shipped.
"""

from setuptools import find_packages, setup

SQL_PACKAGES = [
    "mlops_assets.sql",
    *(f"mlops_assets.sql.{d}" for d in ("migrations", "queries", "views")),
]

setup(
    packages=find_packages(include=["mlops_assets", "mlops_assets.*"]) + SQL_PACKAGES,
    package_dir={"mlops_assets.sql": "sql"},
    package_data={package: ["*.sql"] for package in SQL_PACKAGES},
)
