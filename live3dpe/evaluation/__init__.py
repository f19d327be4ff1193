"""live3dpe.evaluation: metrics with known answers and the evaluation suite (`live3dpe eval`)."""
