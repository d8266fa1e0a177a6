"""Checks that flag results that are not what they seem (issue 4)."""
