"""The `mesh deploy` commands: `mesh deploy kubernetes` writes the manifests of mesh.yaml (see mesh/deploy/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh.deploy.kubernetes import DATABASE_VARIABLE, DEFAULT_IMAGE, Options, generate


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `mesh deploy kubernetes` to the `mesh` command line."""
    deploy = subparsers.add_parser("deploy", help="write what runs the mesh elsewhere (Kubernetes manifests)",
                                   description="Write what runs the mesh elsewhere.")
    targets = deploy.add_subparsers(title="targets", metavar="TARGET")
    help = ("write Kubernetes manifests for mesh.yaml: a ConfigMap, a Deployment and Service per agent and HTTP "
            "tool; every ${VAR} from a Secret")
    sub = targets.add_parser("kubernetes", aliases=["k8s"], parents=[common], help=help, description=help)
    sub.add_argument("-o", "--output", default="k8s", help="directory to write the manifests to (default: k8s)")
    sub.add_argument("--image", default=DEFAULT_IMAGE, help=f"the image built from the Containerfile "
                                                            f"(default: {DEFAULT_IMAGE})")
    sub.add_argument("--secret", help="the Secret holding every ${VAR} of mesh.yaml (default: NAME-secrets)")
    sub.add_argument("--namespace", help="namespace of the objects (default: none, kubectl's -n decides)")
    sub.add_argument("--postgres-sample", action="store_true",
                     help="also write a one-pod PostgreSQL StatefulSet to try things out (not for production)")
    sub.set_defaults(handler=cmd_kubernetes)
    deploy.set_defaults(handler=lambda args: deploy.print_help() or 2)


def cmd_kubernetes(args: argparse.Namespace) -> int:
    options = Options(image=args.image, secret=args.secret, namespace=args.namespace,
                      postgres_sample=args.postgres_sample)
    manifests = generate(args.config, options)
    output = Path(args.output)
    for path in manifests.write(output):
        print(path)
    keys = list(manifests.variables)
    if args.postgres_sample:
        keys.append("POSTGRES_PASSWORD")
    literals = " ".join(f"--from-literal={key}=..." for key in keys)
    print(f"\nCreate the Secret first (values never go in the manifests), then apply:\n"
          f"  kubectl create secret generic {manifests.secret} {literals}\n"
          f"  kubectl apply -f {output}/", file=sys.stderr)
    if DATABASE_VARIABLE in manifests.variables:
        print(f"  ({DATABASE_VARIABLE} is the PostgreSQL URL every agent shares, "
              "postgresql://USER:PASSWORD@HOST:5432/DB)", file=sys.stderr)
    return 0
