"""The lab's model server (``coord lab up --model-server``): aibench's "common REST API" target.

A Gunicorn + Flask service that scores fraud with a model trained at setup on the synthetic
data (scikit-learn, exported with skl2onnx, run by onnxruntime), fetching each transaction's
reference data from the lab's Redis, and classifies images with a MobileNet V1-shaped network
of random weights. It answers its own REST shapes and those of KServe v2 and TF Serving.
Documented in docs/model-serving.md ("The lab's model server").

    build.py     ``python -m coordinator.modelserver.build``: the two ONNX models, and the
                 reference data loaded into Redis (run once at lab up)
    mobilenet.py pure: the MobileNet V1-shaped graph, built with onnx's helper API
    shapes.py    pure: the request and response bodies of the three API shapes
    settings.py  pure: the service's settings, from its environment
    app.py       the Flask application Gunicorn serves

Everything here needs the ``model-server`` extra; the coordinator imports none of it unless
the lab is asked for a model server, and the agent never does.
"""

FRAUD_MODEL = "fraud"
CLASSIFIER_MODEL = "mobilenet"
MODEL_FILES = {FRAUD_MODEL: "fraud.onnx", CLASSIFIER_MODEL: "mobilenet.onnx"}
REQUIRED_MODULES = ("numpy", "sklearn", "skl2onnx", "onnx", "onnxruntime", "flask", "gunicorn")
