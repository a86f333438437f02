"""pytest plugin for benchmarks/timm_contract.sh: registers this package's models before timm's tests are collected
(their parametrisations call ``timm.list_models`` at import time)."""

import hrnet_backbones  # noqa: F401  (registers the models with timm)


def pytest_configure(config):
    # timm's tests carry pytest-timeout marks; without that plugin installed they are only labels
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): a per-test time limit (pytest-timeout)")
