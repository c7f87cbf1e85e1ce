"""The skill vocabulary: the tools and fields an introduction or an answer may name
(`TECH_TERMS`, `CONCEPTS`), and how a field is named on a Korean page (`skill_label`).
"""

from __future__ import annotations

import re

from llm.schemas import Language

# (canonical name, regex). Latin terms match as whole words, case-insensitively; Korean
# terms as substrings (Korean attaches particles: 도커를, 딥러닝으로).
_TECH: tuple[tuple[str, str], ...] = (
    ("Python", r"python|파이썬"),
    ("PyTorch", r"pytorch|파이토치"),
    ("TensorFlow", r"tensorflow|텐서플로우?"),
    ("Keras", r"keras|케라스"),
    ("scikit-learn", r"scikit-learn|sklearn"),
    ("pandas", r"pandas|판다스"),
    ("NumPy", r"numpy|넘파이"),
    ("OpenCV", r"opencv"),
    ("YOLO", r"yolo(?:v\d+)?|욜로"),
    ("Hugging Face", r"hugging\s?face|허깅\s?페이스"),
    ("Transformer", r"transformers?|트랜스포머"),
    ("BERT", r"bert"),
    ("GPT", r"gpt(?:-?\d+(?:\.\d+)?)?"),
    ("LLM", r"llms?|대규모\s?언어\s?모델"),
    ("RAG", r"rag"),
    ("LangChain", r"langchain|랭체인"),
    ("LoRA", r"lora"),
    ("CNN", r"cnns?"),
    ("RNN", r"rnns?"),
    ("LSTM", r"lstm"),
    ("GAN", r"gans?"),
    ("ONNX", r"onnx"),
    ("TensorRT", r"tensorrt"),
    ("CUDA", r"cuda"),
    ("Triton", r"triton"),
    ("vLLM", r"vllm"),
    ("MLOps", r"mlops"),
    ("MLflow", r"mlflow"),
    ("Kubeflow", r"kubeflow"),
    ("Airflow", r"airflow|에어플로우"),
    ("Kubernetes", r"kubernetes|k8s|쿠버네티스"),
    ("Docker", r"docker|도커"),
    ("PostgreSQL", r"postgres(?:ql)?"),
    ("MySQL", r"mysql"),
    ("MongoDB", r"mongodb|몽고\s?db"),
    ("Redis", r"redis|레디스"),
    ("Elasticsearch", r"elasticsearch"),
    ("SQL", r"sql"),
    ("Kafka", r"kafka|카프카"),
    ("Spark", r"(?:apache\s)?spark|pyspark|스파크"),
    ("Hadoop", r"hadoop|하둡"),
    ("AWS", r"aws|sagemaker|amazon\sweb\sservices"),
    ("GCP", r"gcp|google\scloud"),
    ("Azure", r"azure"),
    ("Git", r"git|github|gitlab|깃허브"),
    ("Linux", r"linux|리눅스"),
    ("FastAPI", r"fastapi"),
    ("Django", r"django|장고"),
    ("Flask", r"flask|플라스크"),
    ("Spring", r"spring\s?boot|spring\sframework|스프링"),
    ("JavaScript", r"javascript|자바스크립트"),
    ("TypeScript", r"typescript|타입스크립트"),
    ("Java", r"java|자바(?!스크립트)"),
    ("Node.js", r"node\.?js"),
    ("React", r"react|리액트"),
    ("Vue", r"vue(?:\.js)?"),
    ("C++", r"c\+\+"),
    ("Kotlin", r"kotlin|코틀린"),
    ("REST API", r"rest(?:ful)?\s?apis?|restful"),
    ("GraphQL", r"graphql"),
    ("gRPC", r"grpc"),
    ("CI/CD", r"ci/cd|jenkins|github\sactions"),
    ("Terraform", r"terraform"),
    ("Streamlit", r"streamlit"),
    ("WebRTC", r"webrtc"),
    ("Whisper", r"whisper"),
    # Tools whose names look like project names ("Great Expectations"): known, they are
    # skills, not projects.
    ("Great Expectations", r"great\sexpectations"),
    ("dbt", r"dbt"),
    ("Apache Beam", r"apache\sbeam"),
    ("BigQuery", r"bigquery|빅쿼리"),
    ("Snowflake", r"snowflake"),
    ("Databricks", r"databricks"),
    ("Prometheus", r"prometheus|프로메테우스"),
    ("Grafana", r"grafana|그라파나"),
    ("Tableau", r"tableau|태블로"),
    ("Power BI", r"power\s?bi"),
    ("Jupyter", r"jupyter|주피터"),
    ("Label Studio", r"label\sstudio"),
    ("Weights & Biases", r"weights\s?(?:&|and)\s?biases|wandb"),
    ("Stable Diffusion", r"stable\sdiffusion"),
    ("Go", r"golang"),
    ("NLP", r"nlp|natural\slanguage\sprocessing|자연어\s?처리"),
    ("computer vision", r"computer\svision|컴퓨터\s?비전"),
    ("machine learning", r"machine\slearning|머신\s?러닝|기계\s?학습"),
    ("deep learning", r"deep\slearning|딥\s?러닝|심층\s?학습"),
    ("reinforcement learning", r"reinforcement\slearning|강화\s?학습"),
    ("fine-tuning", r"fine-?tun(?:ing|ed|e)|파인\s?튜닝|미세\s?조정"),
    ("quantization", r"quantiz(?:ation|ed)|양자화"),
    ("model compression", r"model\scompression|경량화"),
    ("distributed training", r"distributed\straining|분산\s?학습"),
    ("object detection", r"object\sdetection|객체\s?(?:탐지|검출)"),
    ("image classification", r"image\sclassification|이미지\s?분류"),
    ("speech recognition", r"speech\srecognition|음성\s?인식"),
    ("emotion recognition", r"emotion\srecognition|감정\s?인식"),
    ("recommender system", r"recommend(?:er|ation)\ssystems?|추천\s?시스템"),
    ("data pipeline", r"data\spipelines?|데이터\s?파이프라인|etl"),
    ("data analysis", r"data\sanalysis|데이터\s?분석"),
    ("preprocessing", r"pre-?processing|전처리"),
    ("embedding", r"embeddings?|임베딩"),
    ("vector database", r"vector\s(?:database|db)|벡터\s?(?:데이터베이스|db)"),
    ("microservices", r"microservices?|마이크로\s?서비스"),
    ("cloud", r"cloud|클라우드"),
    ("database", r"databases?|데이터베이스"),
    ("backend", r"back-?end|백엔드"),
    ("frontend", r"front-?end|프론트엔드"),
    ("A/B test", r"a/b\s?test(?:ing)?|a/b\s?테스트"),
    ("API", r"apis?"),
)


#: Vocabulary entries that name a field or a kind of system rather than a tool one
#: "chooses": the trade-off question prefers tools (PyTorch, Docker) over these.
CONCEPTS = frozenset(
    {
        "NLP",
        "computer vision",
        "machine learning",
        "deep learning",
        "reinforcement learning",
        "fine-tuning",
        "quantization",
        "model compression",
        "distributed training",
        "object detection",
        "image classification",
        "speech recognition",
        "emotion recognition",
        "recommender system",
        "data pipeline",
        "data analysis",
        "preprocessing",
        "embedding",
        "microservices",
        "cloud",
        "database",
        "backend",
        "frontend",
        "A/B test",
        "API",
    }
)


def _compile_term(pattern: str) -> re.Pattern[str]:
    # Latin alternatives need word edges (so SQL does not fire inside MySQL, Git inside
    # digital); Korean ones must not (particles are glued on).
    parts = []
    for alternative in pattern.split("|"):
        if re.search(r"[가-힣]", alternative):
            parts.append(alternative)
        else:
            parts.append(rf"(?<![A-Za-z0-9]){alternative}(?![A-Za-z0-9+])")
    return re.compile("|".join(parts), re.IGNORECASE)


#: (canonical name, compiled pattern) for every known skill, in a fixed order.
TECH_TERMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, _compile_term(pattern)) for name, pattern in _TECH
)

#: How a field (`CONCEPTS`) is named on a Korean page; tools keep their own names.
KO_SKILL_NAMES: dict[str, str] = {
    "NLP": "자연어 처리",
    "computer vision": "컴퓨터 비전",
    "machine learning": "머신러닝",
    "deep learning": "딥러닝",
    "reinforcement learning": "강화 학습",
    "fine-tuning": "파인튜닝",
    "quantization": "양자화",
    "model compression": "모델 경량화",
    "distributed training": "분산 학습",
    "object detection": "객체 탐지",
    "image classification": "이미지 분류",
    "speech recognition": "음성 인식",
    "emotion recognition": "감정 인식",
    "recommender system": "추천 시스템",
    "data pipeline": "데이터 파이프라인",
    "data analysis": "데이터 분석",
    "preprocessing": "전처리",
    "embedding": "임베딩",
    "vector database": "벡터 데이터베이스",
    "microservices": "마이크로서비스",
    "cloud": "클라우드",
    "database": "데이터베이스",
    "backend": "백엔드",
    "frontend": "프론트엔드",
    "A/B test": "A/B 테스트",
}


def skill_label(name: str, language: Language) -> str:
    """A skill as a person reads it: fields in Korean on a Korean page."""
    return KO_SKILL_NAMES.get(name, name) if language == "ko" else name
