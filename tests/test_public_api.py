"""Pin what users may import from `seekstack`."""

import seekstack


def test_exported_members():
    assert sorted(seekstack.__all__) == sorted([
        "__version__", "Backend", "Capabilities", "EngineKind", "ModelConfig", "SeekstackError", "Settings", "build_app",
        "load_settings", "register_engine",
    ])
    for name in seekstack.__all__:
        assert hasattr(seekstack, name), name
