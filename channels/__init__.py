"""HL7 meaning: builders and parsers for each channel, site dialects, escaping and charsets."""
