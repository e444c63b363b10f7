"""Packaging for omnibot."""

import re

from setuptools import find_packages, setup


def read_version():
    with open("omnibot/__init__.py", encoding="utf-8") as source:
        return re.search(r'__version__ = "([^"]+)"', source.read()).group(1)


setup(
    name="omnibot",
    version=read_version(),
    description="A Slack proxy: verify, queue and route Slack requests to Python callbacks.",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["omnibot", "omnibot.*"]),
    install_requires=[
        "Flask>=3.0,<4",
        "gunicorn>=22",
        "PyYAML>=6.0",
        "requests>=2.31",
        "urllib3>=2",
        "slack_sdk>=3.27",
        "redis>=5.0",
        "prometheus_client>=0.20",
        "statsd>=4",
    ],
    extras_require={
        "test": ["pytest>=8", "requests-mock>=1.11", "hypothesis>=6.100", "openapi-core>=0.19"],
    },
    entry_points={"console_scripts": ["omnibot = omnibot.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Framework :: Flask",
    ],
)
