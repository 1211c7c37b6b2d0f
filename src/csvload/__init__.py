"""csvload: stream big product CSV files into PostgreSQL."""

__version__ = "0.1.0"
