aws iam create-open-id-connect-provider \
  --url https://my-bucket.s3.us-west-2.amazonaws.com \
  --client-id-list sts.amazonaws.com my-audience
