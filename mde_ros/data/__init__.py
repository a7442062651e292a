"""Sample data: readers for Debian's visp-images-data sequences (fetched and cached, never committed)."""
