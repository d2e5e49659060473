"""Registers the test suite's toy family: the module a test's processes name in LABTRAIN_FAMILIES."""

from service.jobs.families import register
from tests.service.jobs.toy_family import FAMILY

register(FAMILY)
