"""Getting data in: the CRM simulator and its defects, robust table readers, and importers that
turn real exports (flat or multi-table, through a YAML mapping) into the canonical tables.
"""
