"""The environment variables naming the model and the cache (docs/DEMO_CONTRACT.md section 6).

The backend's variables are in ``deepseek_tt.backend`` (``BACKEND_ENV``, ``TORCH_DEVICE_ENV``), the mesh's
in ``deepseek_tt.config.mesh`` (``MESH_DEVICE_ENV``).
"""

#: The Hugging Face model directory (default of ``--model-path``).
MODEL_PATH_ENV = "DEEPSEEK_V3_HF_MODEL"
#: Where converted weights and other cached data go (default of ``--cache-dir``).
CACHE_DIR_ENV = "DEEPSEEK_V3_CACHE"

__all__ = ["CACHE_DIR_ENV", "MODEL_PATH_ENV"]
