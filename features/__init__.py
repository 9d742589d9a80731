"""returnrisk.features"""
