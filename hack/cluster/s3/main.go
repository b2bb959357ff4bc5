// Command s3 is the local cluster's object-store helper: it makes buckets and uploads files to
// the cluster's MinIO, so the demo and the e2e tests need no other S3 client.
//
//	s3 mb BUCKET...                 # make buckets (existing ones are fine)
//	s3 put FILE... s3://BUCKET/PREFIX/
//	s3 get s3://BUCKET/KEY FILE
//	s3 user USER PASSWORD read:s3://BUCKET/PREFIX/ [write:s3://BUCKET/PREFIX/] [attest:s3://BUCKET/PREFIX/]...
//	                                 # a MinIO user that may do only that (write includes read;
//	                                 # attest: add objects under PREFIX*/attestations/ only)
//
// The endpoint and credentials come from S3_ENDPOINT, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/gantry-ml/gantry/internal/objstore"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "s3:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: s3 mb BUCKET... | s3 put FILE... s3://BUCKET/PREFIX/ | s3 get s3://BUCKET/KEY FILE")
	}
	ep := os.Getenv("S3_ENDPOINT")
	host, secure := strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://"), strings.HasPrefix(ep, "https://")
	c, err := minio.New(host, &minio.Options{Secure: secure,
		Creds: credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch args[0] {
	case "mb":
		for _, b := range args[1:] {
			if ok, err := c.BucketExists(ctx, b); err != nil {
				return err
			} else if !ok {
				if err := c.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
					return err
				}
			}
		}
	case "put":
		dst, err := objstore.Parse(args[len(args)-1])
		if err != nil {
			return err
		}
		for _, f := range args[1 : len(args)-1] {
			key := dst.Key + filepath.Base(f)
			if _, err := c.FPutObject(ctx, dst.Bucket, key, f, minio.PutObjectOptions{}); err != nil {
				return err
			}
			fmt.Printf("s3://%s/%s\n", dst.Bucket, key)
		}
	case "get":
		if len(args) != 3 {
			return fmt.Errorf("usage: s3 get s3://BUCKET/KEY FILE")
		}
		src, err := objstore.Parse(args[1])
		if err != nil {
			return err
		}
		return c.FGetObject(ctx, src.Bucket, src.Key, args[2], minio.GetObjectOptions{})
	case "user":
		if len(args) < 4 {
			return fmt.Errorf("usage: s3 user USER PASSWORD read:s3://BUCKET/PREFIX/ [write:s3://BUCKET/PREFIX/]...")
		}
		return user(ctx, host, secure, args[1], args[2], args[3:])
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	return nil
}

// user creates (or resets) a MinIO user whose one policy allows exactly the grants: read (get,
// list) or write (get, put, delete, list) under each prefix. The local cluster's credentials per role:
// the model servers read the registry; the training launcher and the canary read the datasets
// and write runs/.
func user(ctx context.Context, host string, secure bool, name, password string, grants []string) error {
	adm, err := madmin.New(host, os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), secure)
	if err != nil {
		return err
	}
	var st []string
	for _, g := range grants {
		mode, uri, _ := strings.Cut(g, ":")
		u, err := objstore.Parse(uri)
		if err != nil || u.Scheme != "s3" || (mode != "read" && mode != "write" && mode != "attest") {
			return fmt.Errorf("user: want read:, write: or attest:s3://BUCKET/PREFIX/, got %q", g)
		}
		if mode == "attest" {
			// Add attestations beside the versions under PREFIX (never change or delete anything):
			// they are signed, so whoever may add one cannot forge one.
			st = append(st, fmt.Sprintf(`{"Effect":"Allow","Action":["s3:PutObject"],"Resource":["arn:aws:s3:::%s/%s*/attestations/*"]}`, u.Bucket, u.Key))
			continue
		}
		actions := `"s3:GetObject"`
		if mode == "write" {
			actions += `,"s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"`
		}
		st = append(st, fmt.Sprintf(`{"Effect":"Allow","Action":[%s],"Resource":["arn:aws:s3:::%s/%s*"]}`, actions, u.Bucket, u.Key),
			fmt.Sprintf(`{"Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::%s"],"Condition":{"StringLike":{"s3:prefix":["%s*"]}}}`, u.Bucket, u.Key))
	}
	policy := `{"Version":"2012-10-17","Statement":[` + strings.Join(st, ",") + `]}`
	pname := "gantry-" + name
	if err := adm.AddCannedPolicy(ctx, pname, []byte(policy)); err != nil {
		return fmt.Errorf("policy %s: %w", pname, err)
	}
	if err := adm.AddUser(ctx, name, password); err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	if _, err := adm.AttachPolicy(ctx, madmin.PolicyAssociationReq{Policies: []string{pname}, User: name}); err != nil && !strings.Contains(err.Error(), "already") {
		return fmt.Errorf("attaching %s to %s: %w", pname, name, err)
	}
	fmt.Printf("user %s: %s\n", name, strings.Join(grants, " "))
	return nil
}
