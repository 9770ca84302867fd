"""File readers, cleaning and metadata: a folder of files in, cleaned documents out."""
